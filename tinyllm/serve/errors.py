"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status.

Clients branch on the status (the ``openai`` SDK raises ``BadRequestError`` for 400,
``AuthenticationError`` for 401, ``NotFoundError`` for 404, ...) and show ``message``.
"""
from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class APIError(Exception):
    """An answer that is an error: the status, the message, and OpenAI's ``type``/``param``/``code``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """400: the JSON or a parameter is wrong."""
    return APIError(400, message, param=param, code=code)


def unknown_model(model: str, served: list[str]) -> APIError:
    """404: the request names a model this server was not started with."""
    return APIError(404, f"The model '{model}' does not exist; this server serves: "
                         f"{', '.join(served) or 'nothing'}", param="model", code="model_not_found")


def unavailable(message: str, retry_after: int = 1, code: str = "overloaded") -> APIError:
    """503 with Retry-After: overloaded (the queue is full) or still loading."""
    return APIError(503, message, type="server_error", code=code,
                    headers={"Retry-After": str(retry_after)})
