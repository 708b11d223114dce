// Package bench will hold groupcast's black-box load harness over HTTP.
// Nothing is built here yet; see docs/STATUS.md.
package bench
