"""The pages for people: projects, pipelines, jobs and their logs and artifacts, in a browser."""
