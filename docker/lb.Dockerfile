# berth/lb: the load balancer of the compose deployment, Debian's nginx built FROM scratch (no
# image can be pulled here).
#
# Build it with docker/build-images.sh, which prepares the build context:
#   rootfs/   /usr/sbin/nginx and its shared libraries with the dynamic loader,
#             /etc/nginx/nginx.conf (a copy of docker/nginx.conf), /etc/passwd and /etc/group
#             with the workers' user nginx (101:101), /etc/nsswitch.conf, /tmp, and the
#             folders Debian's build expects (/var/lib/nginx, /var/log/nginx)
#
# The master process runs as root to bind port 80, as in the official nginx image; workers run
# as nginx. Compose mounts docker/nginx.conf over the built-in copy.
FROM scratch
COPY rootfs/ /
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/usr/sbin/nginx", "-g", "daemon off;"]
