"""Running FedSynth: the ``fedsynth`` command (``cli``) and the consortium it starts on one
machine (``local``). Beside them, not Python: ``docker/`` (the client and server images,
compose), ``k8s/`` (the coordinator on Kubernetes), ``entrypoints/`` (the containers'
SuperLink and SuperNode scripts, also used by ``local``), ``guides/`` (for hospital IT,
the coordinator, the auditor) and ``install.sh``. ``deploy`` may import ``common``,
``client`` and ``server``; they never import it.
"""
