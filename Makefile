# groupcast — the two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test vet infra-up infra-down build

run:
	go run ./cmd/groupcastd

build:
	CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/...

# Starts real Cassandra and Redis (installing what is missing), vets, runs
# every test with the race detector against them, and stops the servers.
test:
	scripts/test

vet:
	go vet ./...

infra-up:
	scripts/infra up

infra-down:
	scripts/infra down
