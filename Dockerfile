# syntax=docker/dockerfile:1.7
# The citystack operator image for those with Docker: a static binary (musl) on
# distroless/static, user 65532.
#
#   docker build -t REGISTRY/citystack:0.1.0 .
#
# Without a Docker daemon, `make image` assembles the equivalent image from a release build
# (hack/image/build.sh: the glibc binary with its exact shared libraries, the CA bundle, user
# 65532, entrypoint /citystack) as an OCI layout and a docker-archive under .local/image/, and
# checks it; push it with skopeo, crane or oras (README, "The image"). `make test` checks the
# same image built from its debug binary.
#
# The chart (charts/citystack) runs it as `/citystack run ...` with a read-only root
# filesystem; the binary needs no shell, libc, CA bundle or writable path (it trusts the
# cluster CA from the ServiceAccount mount, TLS is rustls).

# ---- build ------------------------------------------------------------------------------
FROM rust:1.95 AS build
ARG RUST_TARGET=x86_64-unknown-linux-musl
# musl-tools: musl-gcc, for the C and assembly parts of `ring` (rustls' crypto).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${RUST_TARGET}"
WORKDIR /src
# The whole Cargo workspace (.dockerignore leaves out target/, .local/, .git/ and the Go
# tools of hack/): cargo loads every workspace member and the [[test]]/[[bench]] targets
# named in Cargo.toml, though only the operator binary is built.
COPY . .
# The cache mounts keep the registry and target/ between builds; the binary is copied out of
# them. A binary with a program interpreter (dynamic) is refused: distroless/static has no
# dynamic loader.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --target "${RUST_TARGET}" -p citystack --bin citystack \
 && cp "target/${RUST_TARGET}/release/citystack" /citystack \
 && if readelf -lW /citystack | grep -q 'program interpreter'; then echo "citystack is not static" >&2; exit 1; fi \
 && /citystack --version

# ---- run --------------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /citystack /citystack
# distroless' nonroot user; the chart's securityContext asks for the same (runAsUser 65532).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/citystack"]
CMD ["run"]
