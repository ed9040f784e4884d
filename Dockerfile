# syntax=docker/dockerfile:1

# Build stage: compile the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so they are cached while only the service's own code changes.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/proof-bff /proof-bff

# Runtime stage: glibc and CA certificates only, no shell, running as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /proof-bff /usr/local/bin/proof-bff
ENV PROOF_BFF__SERVER__LISTEN=0.0.0.0:8080 \
    PROOF_BFF_CONFIG=/etc/proof-bff/config.toml
USER 65532:65532
EXPOSE 8080
# The binary probes itself: the image has no curl or shell.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/proof-bff", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/proof-bff"]
