# syntax=docker/dockerfile:1
# ferrochat: build in a Rust image, run in a slim one as a non-root user.
# docker build -t ferrochat . && docker run -p 5000:5000 ferrochat

# jQuery for the page, from the npm registry (package-lock.json pins it).
FROM node:20-bookworm-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The cargo registry and target/ are cache mounts (BuildKit's, which podman and buildah
# honour too): kept between builds and never in a layer, so a change to src/ rebuilds
# ferrochat alone and the binary is copied out of target/ in the same step. The touch: files
# from the build context may carry mtimes older than the cached build. (Cargo.toml names
# bench/load.rs as an example: a stand-in keeps the manifest whole.)
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=ferrochat-target,target=/src/target,sharing=locked \
    mkdir bench \
    && echo 'fn main() {}' > bench/load.rs \
    && touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/ferrochat /usr/local/bin/ferrochat

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin ferrochat \
    && mkdir -p /app/data \
    && chown ferrochat:ferrochat /app/data
COPY --from=build /usr/local/bin/ferrochat /usr/local/bin/ferrochat
COPY Rocket.toml /app/
COPY templates /app/templates
COPY static /app/static
COPY --from=assets /assets/node_modules/jquery/dist/jquery.min.js /app/node_modules/jquery/dist/jquery.min.js
# The embedded SQLite file (used when neither MYSQL_URI nor DATABASE_URL is set) lives in
# the working folder; Rocket.toml is found in the folder above.
WORKDIR /app/data
VOLUME ["/app/data"]
USER 10001:10001
ENV ROCKET_ADDRESS=0.0.0.0 \
    ROCKET_PORT=5000 \
    RUST_LOG=info,rocket=warn
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["ferrochat", "healthcheck"]
CMD ["ferrochat"]
