"""Micro-expression data: readers, label maps, the flow pipeline's entry point, partitions.

Public API (import from the submodules; this package imports nothing heavy itself):

- :func:`mer.data.load.load_arrays` / :func:`~mer.data.load.load_with_report`: a data set
  folder -> :class:`mer.data.arrays.MEArrays` (the contract with the model side).
- :func:`mer.data.readers.read_records`: a data set -> :class:`mer.data.records.SampleRecord` list.
- :func:`mer.data.labels.load_label_map`: the label maps (CSV tables in ``labelmaps/``).
- :func:`mer.data.synth.synthesize`: the embedded synthetic data set (CASME II layout).
- :func:`mer.data.partition.partition`: federated client splits that never split a subject.
- :class:`mer.data.errors.DataError`: every bad-input error, naming file and row.
"""
