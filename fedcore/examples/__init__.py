"""Example workloads that run through fedcore's Workload/Trainer interface."""
