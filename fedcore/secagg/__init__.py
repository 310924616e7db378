"""SecAgg+ secure aggregation (Bonawitz et al., CCS 2017; Bell et al., CCS 2020): the ``secagg`` mode.

The coordinator learns only the sum, over the clients whose masked input arrived, of each
client's weighted, fixed-point update, its weight and (in rounds without noise) its clip count;
it recovers the sum when clients drop out between stages, and aborts when fewer than T survive.

Guarantee (semi-honest, Bell et al. 2020): the coordinator together with a coalition of at most
min(floor(gamma n), T - 1) clients (gamma = ``corrupt_fraction``, default 1/3), fixed before the
round's graph seed is drawn, learns nothing about an honest client's input beyond the sum of the
honest survivors' inputs, except with probability <= 2^-40 over the masking graph, as long as at
most floor(delta n) clients drop out (delta = ``dropout_fraction``, default 1/3). The complete
graph (the fallback whenever no sparse degree meets the bound, e.g. every n <= 100 at the
defaults) gives it with probability 1. Advertised keys are signed with each client's certificate
and checked by every receiver (:mod:`.auth`).

Layout (pure maths and crypto apart from protocol state):

- :mod:`.prg` mask PRG (AES-128-CTR keystream, HKDF under ``b"fedpsyau/secagg/v1/mask"``)
- :mod:`.shamir` Shamir sharing over GF(2^521 - 1)
- :mod:`.quantize` fixed point in Z_2^32 / Z_2^64 with an overflow-free scale
- :mod:`.graph` SecAgg+'s random k-regular masking graph from a public seed
- :mod:`.bounds` the degree and share threshold for stated corruption/dropout fractions (<= 2^-40)
- :mod:`.auth` signed key advertisements (through :mod:`fedcore.crypto.signing`)
- :mod:`.stats_noise` round 0's statistics noise for a stated (epsilon, delta)
- :mod:`.noise` the distributed-DP noise hook (defaults to :mod:`fedcore.dp.discrete`)
- :mod:`.state` stages, legal transitions, settings and thresholds (both sides import these)
- :mod:`.wire` body unpacking and sealed share envelopes (through :mod:`fedcore.crypto.recipes`)
- :mod:`.client` / :mod:`.server` the two sides of the :mod:`fedcore.common.aggregation` contract
- :mod:`.unmask` the server's reconstruction and mask removal
- rounds run only through the coordinator's engine and the client daemons (:mod:`fedcore.simulation_memory` in one process)

Messages are in ``protos/fedpsyau/v1/secagg.proto``.
"""
