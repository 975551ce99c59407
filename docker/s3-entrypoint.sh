#!/bin/sh
# Entrypoint of the berth/s3 image (busybox sh): creates the buckets S3_BUCKETS names
# (s3s-fs serves each folder under its root as a bucket), then runs s3s-fs on 0.0.0.0:9000.
set -eu
: "${S3_ACCESS_KEY:?set S3_ACCESS_KEY}"
: "${S3_SECRET_KEY:?set S3_SECRET_KEY}"
for bucket in ${S3_BUCKETS:-}; do
    mkdir -p "/data/$bucket"
done
exec /s3s-fs --host 0.0.0.0 --port 9000 \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" /data
