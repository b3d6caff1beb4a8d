"""The committed OpenAPI document matches the code, and documents what clients need."""

from __future__ import annotations

import json

import pytest

from gateway.export_openapi import OPENAPI_PATH, openapi_document, render

pytestmark = pytest.mark.requirement("RS-API-01")


class TestCommittedOpenApi:
    """gateway/openapi.json is regenerated whenever the API changes."""

    def test_committed_document_is_current(self) -> None:
        """Fails when a route or body changed without `python -m gateway.export_openapi`."""
        assert OPENAPI_PATH.read_text(encoding="utf-8") == render(openapi_document())

    def test_every_endpoint_is_documented(self) -> None:
        """All issue-9 endpoints and DICOMweb STOW-RS (issue 14) are in the document."""
        paths = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))["paths"]
        assert set(paths) == {
            "/infer",
            "/infer/batch",
            "/models",
            "/models/{name}/comparison",
            "/results",
            "/results/{result_id}",
            "/results/{result_id}/verify",
            "/events/{event_id}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/dicomweb/studies",
            "/studies/{study_uid}",
            "/studies/{study_uid}/acknowledge",
        }

    def test_infer_documents_json_and_multipart(self) -> None:
        """POST /infer takes a JSON reference or a multipart upload."""
        document = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
        content = document["paths"]["/infer"]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}
        assert "ImageUpload" in document["components"]["schemas"]

    def test_bearer_security_scheme_is_declared(self) -> None:
        """Protected operations declare the HTTP bearer scheme."""
        document = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
        assert document["paths"]["/results"]["get"]["security"] == [{"HTTPBearer": []}]
        assert "security" not in document["paths"]["/healthz"]["get"]
