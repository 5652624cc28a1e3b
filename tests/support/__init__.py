"""What the tests share: paths and checks of answers (`api`), test data (`world`), databases,
server processes, the Node tooling and a TCP proxy that can cut a database off."""
