"""A whole consortium on one machine: a consortium file, the demo, the simulation.

Inside: ``spec`` (the consortium file: sites, held-out set, run; read and checked once),
``runner`` (runs one: intake, generators, the federation, baselines, report),
``consortium`` (a real SuperLink and SuperNodes on localhost, runs submitted with ``flwr
run``), ``processes`` (process trees stopped whole, free ports), ``demo`` and
``simulate`` (the sample data written as a consortium file, and run), ``phases`` (named
phases, their timings, and what a stop means) and ``certs`` (TLS certificates and
SuperNode keys, also for compose and k8s).
"""
