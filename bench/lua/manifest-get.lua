-- wrk script: GET the manifest URL given on the command line, asking for OCI and Docker
-- manifest types (distribution 2.8 answers 404 to an OCI manifest without the Accept).
wrk.method = "GET"
wrk.headers["Accept"] = os.getenv("BENCH_ACCEPT")
