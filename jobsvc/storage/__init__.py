"""The database and the blob store behind their interfaces, the zip index and the fixture loader.

Never imports http or services.
"""
