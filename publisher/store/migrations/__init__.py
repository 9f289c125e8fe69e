"""Alembic migrations of the store's schema (env.py, versions/); run by publisher.store.migrate."""
