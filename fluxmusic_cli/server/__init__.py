"""`fluxmusic serve`: the models loaded once, behind an HTTP API with a job queue that outlives
the process.

    config    ServerConfig: what `serve` was started with, checked once
    jobs      a job's fields, read off the commands' own options (same defaults, same checks)
    store     SQLite (WAL): jobs and uploads, surviving kill -9
    service   JobService: submit, list, cancel, uploads, events; knows nothing of HTTP
    worker    one thread per device: runs queued jobs in order, keeps the models warm
    execute   the one place a job meets the engine and the run loop
    uploads   a PUT body counted while it streams, kept only when it is audio
    events    job changes as server-sent events
    security  Host, token or cookie, cross-site checks
    app       create_app(service, config): the routes, thin
    http      binding the socket and running uvicorn until SIGTERM or Ctrl-C
    main      a server's life in order: data folder, store, engine, socket, serving, stop

Data flows one way: HTTP -> service -> store / worker -> execute -> engine; the worker sends
job changes up to the service, which hands them to whoever subscribed (an event stream).
"""
