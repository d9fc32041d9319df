"""Typed dependencies: what a handler needs from the application, by name and type.

`create_app` puts the open store, the settings, the loaded standards and plan and the query
gate on `app.state` once; a handler declares `store: StoreDep` (and so on) instead of
reaching into `request.app.state`, so its signature says what it reads and mypy checks it.
They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool,
a hop per request for an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.limits import QueryGate
from api.settings import ApiConfig
from collector.store.store import Store
from compliance.plan import Plan
from compliance.profiles import Standards


async def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def _settings(request: Request) -> ApiConfig:
    settings: ApiConfig = request.app.state.settings
    return settings


async def _standards(request: Request) -> Standards:
    standards: Standards = request.app.state.standards
    return standards


async def _plan(request: Request) -> Plan:
    plan: Plan = request.app.state.plan
    return plan


async def _query_gate(request: Request) -> QueryGate:
    gate: QueryGate = request.app.state.query_gate
    return gate


StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[ApiConfig, Depends(_settings)]
StandardsDep = Annotated[Standards, Depends(_standards)]
PlanDep = Annotated[Plan, Depends(_plan)]
QueryGateDep = Annotated[QueryGate, Depends(_query_gate)]
