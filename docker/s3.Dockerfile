# berth/s3: an S3 server for the compose deployment, s3s-fs 0.14.1 built FROM scratch (no
# image can be pulled here). Development and test use only: s3s-fs keeps objects as plain
# files under /data and each folder there is a bucket.
#
# Build it with docker/build-images.sh, which prepares the build context:
#   rootfs/   /s3s-fs and its shared libraries with the dynamic loader, a static busybox in
#             /bin for the entrypoint and the healthcheck, /entrypoint.sh, /etc/passwd, /etc/group
#   data/     an empty folder, the storage root
#
# Settings (environment): S3_ACCESS_KEY and S3_SECRET_KEY (required), S3_BUCKETS (buckets to
# create at start, separated by spaces). Listens on 0.0.0.0:9000 as user s3 (65532:65532).
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/
ENV PATH=/bin \
    RUST_LOG=s3s_fs=info
USER 65532:65532
VOLUME /data
EXPOSE 9000
ENTRYPOINT ["/bin/sh", "/entrypoint.sh"]
