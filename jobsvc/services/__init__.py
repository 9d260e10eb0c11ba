"""Mutations: each runs in one BEGIN IMMEDIATE transaction and returns a result for expected outcomes."""
