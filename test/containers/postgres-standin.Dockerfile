# A stand-in for the official postgres:15 image, which this machine cannot
# pull (no Docker Hub): Debian's PostgreSQL 15 (the `postgresql` stage of
# deploy/docker/Dockerfile, so no second download) with the official image's
# contract: user postgres (999), PGDATA, and an entrypoint that runs initdb
# with POSTGRES_PASSWORD(_FILE) on first start and then the command.
# scripts/ci-containers.sh builds it; cairn is added to it exactly as
# deploy/docker/postgres.Dockerfile adds it to postgres:N.
ARG POSTGRESQL_STAGE
FROM ${POSTGRESQL_STAGE}
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
RUN install -d -o 999 -g 999 -m 1777 /var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 999:999
