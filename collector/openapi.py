"""The OpenAPI 3.1 document served at ``GET /openapi.json``, written by hand.

The heartbeat schema is derived from the same constants :mod:`collector.validate`
checks, so the document cannot drift from the code. One rule is not expressible
in JSON Schema: the top-level maps must equal the sums of ``days`` (a body that
breaks it is answered 422, which the document lists).
"""

from __future__ import annotations

from typing import Any

from collector import validate as v
from collector.insights import MAX_DAYS, MAX_TOP
from outbox.contract import (
    CONTRACT_DROP_REASONS,
    EXPORT_FORMAT,
    FILE_VERSION,
    MAX_NAME_LENGTH,
    MAX_VERSION_LENGTH,
    PAYLOAD_KEYS,
    PAYLOAD_SCHEMA_VERSION,
    VERSION_PATTERN,
)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document(limits: v.Limits = v.DEFAULT_LIMITS, *, version: str = "1") -> dict[str, Any]:
    """The OpenAPI document for a collector running with ``limits``."""
    name = {"type": "string", "pattern": v.NAME_REGEX, "maxLength": MAX_NAME_LENGTH}
    counts_ref = {"$ref": "#/components/schemas/Counts"}
    counts = {
        "type": "object",
        "propertyNames": name,
        "additionalProperties": {"type": "integer", "minimum": 1, "maximum": v.MAX_COUNT},
        "maxProperties": limits.max_names_per_kind,
    }
    day_counts = {
        **counts,
        "additionalProperties": {
            "type": "integer",
            "minimum": 1,
            "maximum": limits.max_day_count,
        },
    }
    uuid = {"type": "string", "format": "uuid", "pattern": f"^{v.UUID_PATTERN}$"}
    time = {"type": "string", "format": "date-time", "pattern": f"^{v.TIME_PATTERN}$"}
    heartbeat = {
        "type": "object",
        "additionalProperties": False,
        "required": list(v.TOP_KEYS),
        "properties": {
            "schema_version": {"type": "integer", "const": PAYLOAD_SCHEMA_VERSION},
            "heartbeat_id": uuid,
            "instance_id": uuid,
            "sequence": {"type": "integer", "minimum": 1, "maximum": limits.max_sequence},
            "period_start": time,
            "period_end": time,
            "app": {
                "type": "object",
                "additionalProperties": False,
                "required": ["version", "edition"],
                "properties": {
                    "version": {
                        "type": "string",
                        "pattern": f"^(?:{VERSION_PATTERN})$",
                        "minLength": 1,
                        "maxLength": MAX_VERSION_LENGTH,
                    },
                    "edition": {"type": "string", "enum": list(v.EDITIONS)},
                },
            },
            **{key: counts_ref for key in PAYLOAD_KEYS.values()},
            "days": {
                "type": "object",
                "propertyNames": {
                    "type": "string",
                    "format": "date",
                    "pattern": f"^{v.DAY_PATTERN}$",
                },
                "additionalProperties": {"$ref": "#/components/schemas/Day"},
                "maxProperties": limits.max_days,
                "description": "The same counts split by UTC day; the top-level maps are "
                "their sums.",
            },
            "dropped": {
                "type": "object",
                "required": list(CONTRACT_DROP_REASONS),
                "propertyNames": {
                    "type": "string",
                    "pattern": f"^{v.REASON_PATTERN}$",
                    "maxLength": MAX_NAME_LENGTH,
                },
                "additionalProperties": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": limits.max_dropped,
                },
                "maxProperties": limits.max_drop_reasons,
            },
        },
    }
    day = {
        "type": "object",
        "additionalProperties": False,
        "required": list(PAYLOAD_KEYS.values()),
        "properties": {
            key: {"$ref": "#/components/schemas/DayCounts"} for key in PAYLOAD_KEYS.values()
        },
        "description": f"At most {limits.max_day_total} counts in all in one day.",
    }
    receipt = {
        "type": "object",
        "required": ["status", "payload_sha256"],
        "properties": {
            "status": {"type": "string", "enum": ["accepted", "duplicate"]},
            "payload_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    }
    export_file = {
        "type": "object",
        "description": "What `outbox export` writes. payload_sha256 must be the SHA-256 of "
        "the decoded payload_base64 (the frozen heartbeat bytes), which JSON Schema cannot say.",
        "required": [
            "format",
            "version",
            "heartbeat_id",
            "instance_id",
            "sequence",
            "payload_sha256",
            "payload_base64",
        ],
        "properties": {
            "format": {"const": EXPORT_FORMAT},
            "version": {"const": FILE_VERSION},
            "heartbeat_id": uuid,
            "instance_id": uuid,
            "sequence": {"type": "integer", "minimum": 1},
            "payload_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "payload_base64": {"type": "string", "contentEncoding": "base64"},
            "payload": {"$ref": "#/components/schemas/Heartbeat"},
            "authorization": {"type": ["string", "null"], "pattern": "^Bearer "},
        },
    }
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "dotted path of the offending field"},
            "payload_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    }
    window = [
        {
            "name": "days",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS},
        },
        {
            "name": "top",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP},
        },
    ]
    instance_path = {
        "name": "instance_id",
        "in": "path",
        "required": True,
        "schema": uuid,
        "description": "the instance_id the heartbeats carried",
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Helios telemetry collector",
            "version": version,
            "description": "Receives Helios telemetry heartbeats (schema version 1), counts "
            "each exactly once, and publishes the aggregate insights.",
        },
        "paths": {
            "/api/instances/heartbeat": {
                "post": {
                    "operationId": "postHeartbeat",
                    "summary": "Store one heartbeat (idempotent by heartbeat_id)",
                    "description": "Senders also send an `Idempotency-Key` header; when "
                    "present it must equal the body's heartbeat_id (else 422). It is not "
                    "listed as a parameter because that rule spans the header and the body. "
                    "Likewise the top-level maps must be the sums of `days` (else 422).",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Heartbeat"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "accepted (new) or duplicate (same id and body "
                            "seen before; counted once); payload_sha256 is the stored body's",
                            "content": {"application/json": {"schema": receipt}},
                        },
                        "400": _error("not a JSON object, or schema_version is not 1"),
                        "401": _error(
                            "no Authorization: Bearer <instance secret>, or not the secret "
                            "bound to this instance; nothing stored"
                        ),
                        "409": _error("this heartbeat_id was received with a different body"),
                        "413": _error(f"the body is larger than {limits.max_body} bytes"),
                        "415": _error("the body is not sent as application/json"),
                        "422": _error("a field breaks schema version 1; `field` names it"),
                        "503": _error("storage busy or overloaded; honour Retry-After"),
                    },
                }
            },
            "/api/instances/{instance_id}": {
                "get": {
                    "operationId": "getInstance",
                    "summary": "What is stored about one instance (its operator's view)",
                    "parameters": [instance_path],
                    "responses": {
                        "200": {"description": "the instance", "content": {"application/json": {}}},
                        "401": _error("not this instance's secret"),
                        "404": _error("no heartbeat from this instance is stored"),
                        "422": _error("instance_id is not a UUID"),
                    },
                },
                "delete": {
                    "operationId": "forgetInstance",
                    "summary": "Delete an instance's heartbeats and subtract its counts",
                    "parameters": [instance_path],
                    "responses": {
                        "200": {
                            "description": "what was removed",
                            "content": {"application/json": {}},
                        },
                        "401": _error("not this instance's secret"),
                        "404": _error("no heartbeat from this instance is stored"),
                        "422": _error("instance_id is not a UUID"),
                        "503": _error("storage busy; honour Retry-After"),
                    },
                },
            },
            "/api/instances/import": {
                "post": {
                    "operationId": "importHeartbeat",
                    "summary": "Store one heartbeat exported by an offline site; answer a receipt",
                    "description": "The body is the file `outbox export` wrote. The instance "
                    "secret is taken from the Authorization header when sent, else from the "
                    "file. Same validation and idempotency as the heartbeat endpoint.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ExportFile"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "the receipt for `outbox receipt`",
                            "content": {"application/json": {}},
                        },
                        "400": _error("not an export file, or it was altered"),
                        "401": _error("no instance secret, or not this instance's"),
                        "409": _error("this heartbeat_id was received with a different body"),
                        "413": _error("the file is too large"),
                        "415": _error("the file is not sent as application/json"),
                        "422": _error("the heartbeat in it breaks schema version 1"),
                        "503": _error("storage busy or overloaded; honour Retry-After"),
                    },
                }
            },
            "/api/insights": {
                "get": {
                    "operationId": "getInsights",
                    "summary": "The public aggregate numbers",
                    "parameters": window,
                    "responses": {
                        "200": {"description": "insights", "content": {"application/json": {}}},
                        "422": _error("days or top out of range"),
                    },
                }
            },
            "/insights": {
                "get": {
                    "operationId": "getDashboard",
                    "summary": "The public dashboard (HTML, inline SVG, no scripts)",
                    "parameters": window,
                    "responses": {
                        "200": {"description": "the page", "content": {"text/html": {}}},
                        "422": _error("days or top out of range"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "responses": {
                        "200": {"description": "up", "content": {"application/json": {}}},
                        "503": _error("the database does not answer"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Heartbeat": heartbeat,
                "Day": day,
                "Counts": counts,
                "DayCounts": day_counts,
                "Error": error,
                "ExportFile": export_file,
            },
            "securitySchemes": {
                "instanceSecret": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The instance secret the outbox made with its instance id",
                }
            },
        },
        "security": [{"instanceSecret": []}],
    }
    for public in ("/api/insights", "/insights", "/healthz"):
        doc["paths"][public]["get"]["security"] = []  # anyone may read these
    # The header, or else the secret inside the export file.
    doc["paths"]["/api/instances/import"]["post"]["security"] = [{"instanceSecret": []}, {}]
    return doc
