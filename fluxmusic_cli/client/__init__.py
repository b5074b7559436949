"""The command line as a client of `fluxmusic serve`: the HTTP client (`api`), the body of a
job read off a run's item (`jobs`), and the run service's twin that sends items to a server
and writes their clips here (`service`). Nothing here imports the server's code: the two meet
only in the API's JSON."""
