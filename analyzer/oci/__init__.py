"""The OCI distribution API and its documents: manifests (`manifest`), who a request is made as
(`auth`), the HTTP client (`client`) and the one write apply needs (`writer`).

The scanner that walks a registry through this client is a source: `analyzer.sources.oci`.
"""
