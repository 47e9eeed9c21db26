module github.com/cloister-go/cloister

go 1.26.8

require (
	github.com/ergo-services/ergo v1.999.224 // indirect
	github.com/miekg/dns v1.1.73 // indirect
	github.com/stathat/consistent v1.0.0 // indirect
	golang.org/x/net v0.57.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
