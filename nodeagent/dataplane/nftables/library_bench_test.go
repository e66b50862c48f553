package nftables

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/nftables"
	"sigs.k8s.io/knftables"

	"github.com/ganglion-proxy/ganglion/internal/benchstat"
)

// BenchmarkNFTLibraryChoice times the same small transaction (add one set element, then delete
// it) through google/nftables on our lasting netlink socket and through knftables, which runs
// the nft binary. It prints one LIB line; the package doc records the figures.
func BenchmarkNFTLibraryChoice(b *testing.B) {
	l := newLab(b, 1)
	d := l.dataplane(b)
	apply(b, d, benchPorts(benchSmall)...)
	set := &nftables.Set{Table: d.tables[familyV4].table, Name: setClusterIPs}
	cc := d.k.(*netlinkKernel).cc
	var viaNetlink []time.Duration
	for i := range benchSamples {
		key := []byte{192, 0, 2, byte(i)}
		start := time.Now()
		if err := cc.SetAddElements(set, []nftables.SetElement{{Key: key}}); err != nil {
			b.Fatal(err)
		}
		if err := cc.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := cc.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
			b.Fatal(err)
		}
		if err := cc.Flush(); err != nil {
			b.Fatal(err)
		}
		viaNetlink = append(viaNetlink, time.Since(start)/2)
	}
	var viaNft []time.Duration
	err := l.node.Do(func() error {
		nft, err := knftables.New(knftables.IPv4Family, TableName)
		if err != nil {
			return err
		}
		for i := range benchSamples {
			key := fmt.Sprintf("192.0.2.%d", i)
			start := time.Now()
			tx := nft.NewTransaction()
			tx.Add(&knftables.Element{Set: setClusterIPs, Key: []string{key}})
			if err := nft.Run(context.Background(), tx); err != nil {
				return err
			}
			tx = nft.NewTransaction()
			tx.Delete(&knftables.Element{Set: setClusterIPs, Key: []string{key}})
			if err := nft.Run(context.Background(), tx); err != nil {
				return err
			}
			viaNft = append(viaNft, time.Since(start)/2)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("LIB google_nftables_us=%.0f knftables_us=%.0f\n",
		float64(benchstat.Runs(viaNetlink).Median().Nanoseconds())/1000, float64(benchstat.Runs(viaNft).Median().Nanoseconds())/1000)
}
