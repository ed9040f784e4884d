# syntax=docker/dockerfile:1

# Base images are pinned by digest (multi-architecture indexes of rust:1.95-bookworm and
# gcr.io/distroless/cc-debian12:nonroot), so a rebuild uses the same toolchain and runtime files.
# To move to newer ones, resolve the tags again and replace both digests.

# Build stage: compile the release binaries, proof-bff and the stand-in for Proof.
FROM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
# Everything the manifest names: cargo reads every declared target (the benchmark and the build
# script included) and the workspace member (the stand-in for Proof that --sandbox starts), even to
# build only the binary. `.ci/run` builds from exactly these paths, so a missing one fails CI.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY stand-in ./stand-in
# The browser client, compiled, which the sandbox's demo page serves.
COPY clients/js/dist ./clients/js/dist
# The commit `proof-bff --version` reports: the build context has no .git to read it from, so pass
# it in, e.g. `docker build --build-arg PROOF_BFF_COMMIT="$(git rev-parse HEAD)" .`; without it
# the version says the commit is unknown. Declared here, after the copies, so a new commit id
# leaves their layers cached.
ARG PROOF_BFF_COMMIT=""
# The crate registry and the target directory are build caches: a rebuild after a code change
# recompiles only proof-bff, without placeholder sources that must mirror the manifest's targets.
# The binaries are copied out because cache mounts are not part of the image. Both are built: the
# workspace's default members are proof-bff and the stand-in.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/proof-bff target/release/proof-stand-in /

# Runtime stage: glibc and CA certificates only, no shell, running as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /proof-bff /usr/local/bin/proof-bff
# The stand-in for Proof as a process of its own, for several replicas sharing one stand-in (see
# deploy/compose); the entrypoint stays proof-bff.
COPY --from=build /proof-stand-in /usr/local/bin/proof-stand-in
ENV PROOF_BFF__SERVER__LISTEN=0.0.0.0:8080 \
    PROOF_BFF_CONFIG=/etc/proof-bff/config.toml
USER 65532:65532
EXPOSE 8080
# The binary probes itself (the image has no curl or shell). Without --url it reads the same
# config file and environment as the service, so it follows a changed server.listen.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/proof-bff", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/proof-bff"]
