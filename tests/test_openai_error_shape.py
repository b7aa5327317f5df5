"""Every error body is rbee's and OpenAI's at once: rbee's code, message, details and correlation
id, plus OpenAI's `type` (from the HTTP status) and `param` (the refused field, else null)."""

import pytest
from pydantic import Field

from rbee.common.errors import ApiError
from rbee.common.request_body import RequestBody
from rbee.common.validation import check_identifier

CID = "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b"


@pytest.mark.parametrize(("status", "expected"), [
    (400, "invalid_request_error"),
    (401, "authentication_error"),
    (403, "permission_error"),
    (404, "not_found_error"),
    (405, "invalid_request_error"),
    (409, "invalid_request_error"),
    (413, "invalid_request_error"),
    (429, "rate_limit_error"),
    (500, "server_error"),
    (503, "server_error"),
    (504, "server_error"),
    (507, "server_error"),
])
def test_the_type_follows_the_http_status_as_openai_names_it(status, expected):
    assert ApiError(status, "SOME_CODE", "text").body(CID)["error"]["type"] == expected


def test_an_error_about_no_field_has_a_null_param_and_keeps_rbees_keys():
    body = ApiError(429, "QUEUE_FULL", "too many", {"model": "m"}).body(CID)
    assert body == {"error": {"code": "QUEUE_FULL", "message": "too many", "type": "rate_limit_error",
                              "param": None, "details": {"model": "m"}, "correlation_id": CID}}


class _Body(RequestBody):
    temperature: float = Field(0.5, ge=0, le=2)
    model: str


def test_a_validation_error_names_the_first_refused_field_as_param():
    with pytest.raises(ApiError) as refused:
        _Body.parse({"model": "m", "temperature": 9})
    error = refused.value.body(CID)["error"]
    assert (error["code"], error["type"], error["param"]) == ("INVALID_REQUEST", "invalid_request_error",
                                                              "temperature")


def test_a_refused_identifier_names_its_field_as_param():
    with pytest.raises(ApiError) as refused:
        check_identifier("task_id", "no spaces allowed")
    assert refused.value.body(CID)["error"]["param"] == "task_id"
