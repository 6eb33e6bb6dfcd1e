# ferrochat: build in a Rust image, run in a slim one as a non-root user.
# docker build -t ferrochat . && docker run -p 5000:5000 ferrochat

# jQuery for the page, from the npm registry (package-lock.json pins it).
FROM node:20-bookworm-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: a change to src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
# (Cargo.toml names bench/load.rs as an example: a stand-in keeps the manifest whole.)
RUN mkdir src bench \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > bench/load.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin ferrochat \
    && mkdir -p /app/data \
    && chown ferrochat:ferrochat /app/data
COPY --from=build /src/target/release/ferrochat /usr/local/bin/ferrochat
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
