"""``tinyllm serve``: an OpenAI-compatible HTTP server for the models here (Starlette on uvicorn).

:func:`tinyllm.serve.app.create_app` builds the ASGI app from :class:`tinyllm.serve.models.ServedModel`
entries; :mod:`tinyllm.serve.scheduler` decodes concurrent requests together, a token at a time;
:mod:`tinyllm.serve.requests` checks request bodies; :mod:`tinyllm.serve.errors` shapes errors as
OpenAI does. ``docs/serve.md`` shows the clients (the openai SDK, simonw/llm, curl).
"""
