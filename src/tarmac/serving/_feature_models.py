"""The request and response models of the feature endpoints, and their limits: declared
once, for OpenAPI and for the hand-written checks of the hot path (``features_api``), which use
the same limits (pydantic is not run per request: it would cost more than the read).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

MAX_ENTITIES = 1000  # per request: bigger batches belong to the offline path (training_set)
MAX_REFS = 1000  # feature refs per request (duplicates count: they are asked once)
MAX_NAME_CHARS = 200  # a service name or one ref, 'view:feature'

# -- the OpenAPI description (not used to parse requests) -----------------------------------


class FeaturesRequest(BaseModel):
    """A request for the online values of some entities' features."""

    features: (Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
               | Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]],
                           Field(min_length=1, max_length=MAX_REFS)]) = Field(
        description="A feature service name, or refs: 'view:feature' (one feature) or 'view' "
                    f"(all of its features); at most {MAX_REFS} refs of {MAX_NAME_CHARS} "
                    "characters, a ref given twice is served once.",
        examples=["churn", ["activity:sessions", "activity:spend"]])
    entities: list[dict[str, Any]] = Field(
        max_length=MAX_ENTITIES,
        description=f"One object per entity (at most {MAX_ENTITIES}): its join key values, and "
                    "the request values on-demand features need.",
        examples=[[{"customer_id": 42}]])


class FeatureResult(BaseModel):
    """One entity's features: value (null unless present), status and event time."""

    entity: dict[str, Any]
    values: dict[str, Any]
    status: dict[str, Literal["present", "missing", "stale", "invalid"]] = Field(
        description="present; missing (no value for this entity); stale (older than the "
                    "view's ttl); invalid (an on-demand value that is not a finite number)")
    event_time: dict[str, str | None] = Field(
        description="ISO time of each value (null when missing or computed on demand)")


class FeaturesResponse(BaseModel):
    features: list[str] = Field(description="The feature names, in order.")
    results: list[FeatureResult] = Field(description="One per entity, in the order asked.")


class ServiceInfo(BaseModel):
    name: str
    description: str
    features: list[str] = Field(description="The refs it serves, 'view:feature'.")
    outputs: list[str] = Field(description="The feature names in answers, in order.")
    join_keys: list[str] = Field(description="What each entity must give.")
    request: list[str] = Field(description="Request values on-demand features need.")


class FeatureInfo(BaseModel):
    name: str
    dtype: str
    description: str


class ViewInfo(BaseModel):
    name: str
    kind: Literal["view", "on_demand"]
    description: str
    join_keys: list[str]
    ttl_seconds: float | None
    features: list[FeatureInfo]
    request: list[FeatureInfo]


class Registered(BaseModel):
    services: list[ServiceInfo]
    views: list[ViewInfo]


def request_schema() -> dict[str, Any]:
    schema = FeaturesRequest.model_json_schema()
    assert "$defs" not in schema, "FeaturesRequest must stay flat (inlined in openapi_extra)"
    return schema


__all__ = ["MAX_ENTITIES", "MAX_NAME_CHARS", "MAX_REFS", "FeatureInfo",
           "FeatureResult", "FeaturesRequest", "FeaturesResponse", "Registered", "ServiceInfo",
           "ViewInfo", "request_schema"]
