module github.com/groupcast/groupcast

go 1.26.0

require (
	github.com/gocql/gocql v1.7.0
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/golang/snappy v0.0.3 // indirect
	github.com/hailocab/go-hostpool v0.0.0-20160125115350-e80d13ce29ed // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/sys v0.49.0 // indirect
	gopkg.in/inf.v0 v0.9.1 // indirect
)
