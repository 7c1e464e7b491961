# Multi-stage build: compile in the Rust image, run as a non-root user in a slim image.
#   docker build -t autorevert .
#   docker run --rm -p 8080:8080 -e LISTEN_ADDR=0.0.0.0:8080 -e WEBHOOK_SECRET=... \
#     -e GITHUB_APP_ID=... -e GITHUB_APP_PRIVATE_KEY_PATH=/secrets/app.pem \
#     -e CLICKHOUSE_URL=https://... autorevert serve
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The status pages' templates are compiled into the binary (askama).
COPY templates ./templates
# Cargo reads every target the manifest declares, benches included, before building one.
COPY benches ./benches
RUN cargo build --release --locked --bin autorevert

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin autorevert \
 && mkdir -p /var/lib/autorevert/spool && chown -R 10001:10001 /var/lib/autorevert
COPY --from=build /src/target/release/autorevert /usr/local/bin/autorevert
USER 10001:10001
ENV LISTEN_ADDR=0.0.0.0:8080 SPOOL_DIR=/var/lib/autorevert/spool
# The delivery log: keep it on a persistent volume, or a crash loses answered deliveries.
VOLUME ["/var/lib/autorevert"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/autorevert"]
CMD ["serve"]
