"""Batch transform (SageMaker's CreateTransformJob): a registered model over every record of a
dataset version or an artifact prefix, the predictions stored as ``<input file>.out``.

A transform is a job of kind ``transform`` (so status, logs, stop, ``job.*`` events, lineage
and the job controller are the jobs domain's); ``runner.py`` is what runs inside it
(``python -m shipyard.hosting.transform``), ``records.py`` how records become requests and
answers become lines, and ``service.py``/``router.py`` the API that checks the model and
submits the job. This package's ``__init__`` imports nothing, so the runner starts without
the server's stack.
"""
