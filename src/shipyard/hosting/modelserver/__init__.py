"""The model-server replica: one process that loads one model and serves it over HTTP.

Started by the hosting tier, one process per replica, after it has verified and extracted the
model version's ``model.tar.gz`` into a private directory::

    python -m shipyard.hosting.modelserver --model-dir DIR --flavor sklearn --port 8080 \\
        [--host 127.0.0.1] [--model-version v23] [--max-body-bytes 6291456] [--predict proba]

Options also come from the environment (a flag wins): ``SM_MODEL_DIR``,
``SAGEMAKER_BIND_TO_PORT``, ``SHIPYARD_MODEL_FLAVOR``, ``SHIPYARD_MODEL_VERSION``,
``SHIPYARD_PREDICT``, ``SHIPYARD_MAX_BODY_BYTES`` (see ``options.py`` for the rest). The
process prints ``READY <port>`` on stdout once the model is loaded and served, exits non-zero
with one ``modelserver: error: ...`` line on stderr when the model cannot be loaded, and on
SIGTERM stops accepting, answers what is in flight, and exits 0.

HTTP, as a SageMaker inference container:

- ``GET /ping``: 200 once the model is loaded, 503 before; empty body.
- ``POST /invocations``: ``Content-Type`` and ``Accept`` among ``application/json`` (the
  default), ``text/csv`` and ``application/x-npy``; ``X-Amzn-SageMaker-Custom-Attributes`` is
  handed to ``inference.py`` functions through their optional ``context`` argument.

JSON conventions (``model_version`` is added to every JSON object answer when it is set):

==========================================  ==================================================
request body                                answer
==========================================  ==================================================
``{"features": [25, 2, 0.0, ...]}``         ``{"prediction": 0.87, "model_version": "v23"}``
``{"instances": [[...], [...]]}``           ``{"predictions": [0.87, 0.12], "model_version":
(or ``"inputs"``, or a bare list of rows;   "v23"}``
a flat list is one row)
``text/csv``: one row per line, numbers,    ``text/csv``: one prediction per line (a row of
empty fields are NaN                        comma-separated values for multi-output models)
``application/x-npy``: an array (1-D is     ``application/x-npy``: the model's output array,
one row)                                    as the model returned it
==========================================  ==================================================

In JSON and CSV answers an ``(n, 1)`` output is flattened to ``n`` values. JSON ``null`` is
NaN. For scikit-learn classifiers ``--predict proba`` (``SHIPYARD_PREDICT=proba``) answers the
positive-class probability (the whole probability row for more than two classes); the
default is ``predict``.

Errors are JSON, ``{"error": {"code": "...", "message": "..."}}``: input the model rejects
(an unparsable body, a wrong feature count, an exception in ``predict`` or in an
``inference.py`` function) is ``400 ModelError`` with the model's own message (a function may
raise an exception carrying an ``int`` ``status_code`` to choose another 4xx/5xx); an
unsupported ``Content-Type`` is ``415``, an ``Accept`` that nothing can produce ``406``, a
body over ``--max-body-bytes`` ``413``; a fault of the server itself is logged with its
traceback and answered ``500 InternalFailure``.

Flavors: ``sklearn``, ``xgboost``, ``pytorch`` (TorchScript), ``onnx`` and ``custom``; see
``flavors.py`` for the files each one loads and ``script.py`` for the ``inference.py``
contract. Only the flavor being served is imported: a scikit-learn replica never imports
torch, xgboost or onnxruntime.
"""
