// Package channelgroups is groupcast's domain: account, group and channel
// names with PubNub's rules, the Timetoken hybrid logical clock, group
// membership as a last-writer-wins map, and the edit service that writes it
// to a Store.
//
// The package imports only the standard library. Storage adapters live in
// sub-packages (cassandra, bolt) and are checked by one conformance suite
// (storetest) so that both give exactly the same answers.
package channelgroups
