"""Pure rules: statuses, the state machine, policy, CI config, durations, times, tokens.

Imports nothing from storage, services or http.
"""
