"""Deployment helpers behind `rbee deploy …`: checking and submitting the files under jobs/."""
