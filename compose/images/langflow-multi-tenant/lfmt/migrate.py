"""Migrates one tenant schema to Alembic head with Langflow's own database initialisation.

Run by the harness (tenancy::migrate) with LANGFLOW_DATABASE_URL set to the tenant's role, whose
search_path is pinned to the tenant schema: Langflow creates its tables there, upgrades to head
and runs its schema health check, exactly as it does at start-up, without starting the server.
"""
import asyncio
import sys

from langflow.services.utils import initialize_settings_service

initialize_settings_service()

from langflow.services.database.utils import initialize_database  # noqa: E402

asyncio.run(initialize_database())
print("migrated to head", file=sys.stderr)
