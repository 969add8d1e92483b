"""``coloi serve``: colourisation over HTTP, as an API and a page in the browser.

Needs the ``serve`` extra (``pip install 'coloi[serve]'``: Starlette, uvicorn and
python-multipart), which only this package imports, and only when ``coloi serve`` runs: the
rest of coloi never imports it.

- :mod:`coloi.serve.app`: the ASGI application (routes, token, errors as JSON);
- :mod:`coloi.serve.upload`: reading an upload within its size limit;
- :mod:`coloi.serve.pool`: the bounded pool of workers and its waiting line;
- :mod:`coloi.serve.openapi`: the API's OpenAPI description;
- :mod:`coloi.serve.server`: binding the socket and running uvicorn;
- ``static/``: the page at ``/`` (plain HTML, CSS and JavaScript, nothing from other sites).
"""
