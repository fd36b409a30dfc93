"""Use cases: one torch-free function per thing a user does, called alike by the CLI, the dashboard and the worker.

Each takes its database from the caller, checks the user's role and writes its audit entry in the same transaction.
The engine (torch) is reached only lazily, from inside the functions that need it, so the dashboard never loads torch.
"""
