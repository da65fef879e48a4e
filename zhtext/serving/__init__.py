"""The models behind an HTTP API (``zhtext serve``): FastAPI over uvicorn, with dynamic batching.

- :mod:`~zhtext.serving.models`: what is served, loaded once through the pipeline's steps;
- :mod:`~zhtext.serving.batching`: a worker thread per model gathering concurrent requests;
- :mod:`~zhtext.serving.limits`: body size, texts per request, characters per text;
- :mod:`~zhtext.serving.endpoints`: each endpoint's request and records (the CLI's);
- :mod:`~zhtext.serving.app`: the app, its errors, and running it under uvicorn.

FastAPI and uvicorn are the ``serve`` extra: nothing here is imported by ``import zhtext``.
"""
