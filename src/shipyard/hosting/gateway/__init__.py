"""The gateway: the data plane in front of model-server replicas (DESIGN §2, §4).

Its own process (``shipyard gateway``, or a child of ``shipyard up`` on the API port + 1)
serving SageMaker Runtime's ``POST /endpoints/{name}/invocations``, so
``boto3.client("sagemaker-runtime", endpoint_url=GATEWAY_URL, aws_access_key_id=KEY_ID,
aws_secret_access_key=SECRET).invoke_endpoint(...)`` works unchanged; a bearer API key works
too. It authenticates (``auth``), throttles per key, routes by weight or ``TargetVariant``
over the table the endpoint controller publishes (``table``; hosting/routes.py), mirrors to a
shadow, retries a dead replica on another one (``upstream``), captures sampled requests and
responses (``capture``), counts per variant (``stats``: ``GET /metrics``, and
``endpoint_traffic`` for the autoscaler), and answers errors in SageMaker's shapes
(``errors``). Nothing on a request's path reads the DB or writes a log line.

Modules: ``app`` (the ASGI app, the hot path), ``server`` (the process), ``supervisor``
(the child of ``shipyard up``).
"""
