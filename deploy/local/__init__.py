"""A whole consortium on one machine: the demo, the simulation, and what they start.

Inside: ``consortium`` (a real SuperLink and SuperNodes on localhost, runs submitted with
``flwr run``), ``processes`` (process trees stopped whole, free ports), ``demo`` (``fedsynth
demo``: sample data, intake, federated rounds, baselines, report), ``simulate`` (the same
apps on Flower's Simulation Engine), ``phases`` (named phases, their timings, and what a
stop means) and ``certs`` (TLS certificates and SuperNode keys, also for compose and k8s).
"""
