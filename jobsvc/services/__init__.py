"""Mutations: each runs in one unit of work (``Repository.write``) and returns a result for expected outcomes.

Written against the repository and the store, never against a driver, and never importing aiohttp.
"""
