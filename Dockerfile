# Multi-stage build: compile in the Rust image, run as a non-root user in a slim image.
#   docker build -t autorevert .
#   docker run --rm -p 8080:8080 -e LISTEN_ADDR=0.0.0.0:8080 -e WEBHOOK_SECRET=... \
#     -e GITHUB_APP_ID=... -e GITHUB_APP_PRIVATE_KEY_PATH=/secrets/app.pem \
#     -e CLICKHOUSE_URL=https://... autorevert serve
#   First start, before the App exists (setup mode: open the /setup URL from the log):
#   docker run --rm -p 8080:8080 -v autorevert:/var/lib/autorevert \
#     -e PUBLIC_URL=https://autorevert.example.org \
#     -e SETUP_CREDENTIALS_FILE=/var/lib/autorevert/github-app.env autorevert
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The binary embeds the App manifest (the /setup page posts it to GitHub).
COPY app-manifest.yml ./
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
# The image has no curl: the binary asks its own /healthz (LISTEN_ADDR, 0.0.0.0 -> 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/autorevert", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/autorevert"]
CMD ["serve"]
