# cairn inside a PostgreSQL image, so that archive_command and
# restore_command can run it: the official postgres:N images (Debian based;
# the Alpine ones lack the glibc that cairn's Node needs) plus the
# self-contained tree of the cairn image. Build from any directory:
#
#   docker build -f deploy/docker/postgres.Dockerfile \
#     --build-arg CAIRN_IMAGE=cairn:0.1.0 --build-arg POSTGRES_IMAGE=postgres:18 -t postgres-cairn:18 .
#
# then run PostgreSQL with
#   -c archive_mode=on -c "archive_command=/opt/cairn/bin/cairn-wal-push %p"
# and mount the settings as /etc/cairn/cairn.conf (archive_command need not
# see the container's environment). In a Dockerfile of one's own these are
# the two lines:
#
#   FROM postgres:18
#   COPY --from=cairn:0.1.0 /opt/cairn /opt/cairn

ARG CAIRN_IMAGE=cairn:0.1.0
ARG POSTGRES_IMAGE=postgres:18
FROM ${CAIRN_IMAGE} AS cairn
FROM ${POSTGRES_IMAGE}
COPY --from=cairn /opt/cairn /opt/cairn
