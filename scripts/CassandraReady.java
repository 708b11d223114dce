// CassandraReady - scripts/cassandra's readiness check for a cluster of several datacenters (node i =
// datacenter "dc<i>"), run with the DataStax Java driver 3 that cassandra-all already ships.
//
//   java -cp <classes>:<cassandra lib>/* CassandraReady CQL_PORT STORAGE_PORT DEADLINE_EPOCH_S IP1 IP2 ...
//
// Waits, until the deadline, for two conditions, each on every node:
//   observed   - system.local says dc<i>; system.peers_v2 has every other node j with data_center dc<j>,
//                tokens, and the local schema version (what Cassandra 5.0 records once it has handled
//                j's NORMAL state: j is in its token metadata, so NetworkTopologyStrategy may name dc<j>);
//   sufficient - what the tests do right after `up`: a keyspace NetworkTopologyStrategy {dc1:1, dc2:1, ...}
//                is created, every node writes a row at LOCAL_QUORUM as coordinator in its own
//                datacenter, and every node reads every other node's row at LOCAL_ONE (the write crossed
//                datacenters). The keyspace is dropped again.
// Exits 0 when both hold, 1 with the last problem on stderr otherwise.
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.ConsistencyLevel;
import com.datastax.driver.core.ProtocolVersion;
import com.datastax.driver.core.QueryOptions;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.SimpleStatement;
import com.datastax.driver.core.SocketOptions;
import com.datastax.driver.core.policies.DCAwareRoundRobinPolicy;
import com.datastax.driver.core.policies.WhiteListPolicy;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.Collections;
import java.util.Set;
import java.util.UUID;

public class CassandraReady {
    static int cqlPort, storagePort;
    static long deadline, t0;
    static String[] ips;
    static Cluster[] clusters;
    static Session[] sessions;

    static void log(String s) {
        System.err.printf("[cassandra-ready] %5.1fs %s%n", (System.currentTimeMillis() - t0) / 1000.0, s);
    }

    static String dc(int i) { return "dc" + (i + 1); }

    /** Repeats step until it returns null (done), logging each new problem, until the deadline. */
    static void await(String what, java.util.concurrent.Callable<String> step) throws InterruptedException {
        String last = "";
        while (true) {
            String problem;
            try {
                problem = step.call();
            } catch (Exception e) {
                problem = e.getClass().getSimpleName() + ": " + e.getMessage();
            }
            if (problem == null) {
                log(what + ": ok");
                return;
            }
            if (!problem.equals(last)) log(what + ": " + problem);
            last = problem;
            if (System.currentTimeMillis() > deadline) {
                System.err.println("[cassandra-ready] ERROR: " + what + " not reached before the deadline: " + problem);
                System.exit(1);
            }
            Thread.sleep(500);
        }
    }

    /** Why node i's view of the cluster is not yet complete, or null. */
    static String topology(int i) throws Exception {
        Session s = sessions[i];
        Row local = s.execute("SELECT data_center, schema_version FROM system.local").one();
        if (!dc(i).equals(local.getString("data_center")))
            return ips[i] + " is in " + local.getString("data_center") + ", want " + dc(i);
        UUID schema = local.getUUID("schema_version");
        for (int j = 0; j < ips.length; j++) {
            if (j == i) continue;
            Row p = s.execute("SELECT data_center, tokens, schema_version FROM system.peers_v2 WHERE peer = ? AND peer_port = ?",
                    InetAddress.getByName(ips[j]), storagePort).one();
            if (p == null) return ips[i] + " has no system.peers_v2 row for " + ips[j];
            if (!dc(j).equals(p.getString("data_center")))
                return ips[i] + " sees " + ips[j] + " in datacenter " + p.getString("data_center") + ", want " + dc(j);
            Set<String> tokens = p.getSet("tokens", String.class);
            if (tokens.isEmpty()) return ips[i] + " has no tokens for " + ips[j];
            if (!schema.equals(p.getUUID("schema_version")))
                return ips[i] + " and " + ips[j] + " disagree on the schema version";
        }
        return null;
    }

    public static void main(String[] a) throws Exception {
        t0 = System.currentTimeMillis();
        cqlPort = Integer.parseInt(a[0]);
        storagePort = Integer.parseInt(a[1]);
        deadline = Long.parseLong(a[2]) * 1000;
        ips = java.util.Arrays.copyOfRange(a, 3, a.length);
        int n = ips.length;
        clusters = new Cluster[n];
        sessions = new Session[n];
        for (int i = 0; i < n; i++) {
            final int k = i;
            InetSocketAddress addr = new InetSocketAddress(ips[i], cqlPort);
            // One session per node, pinned to it: each statement's coordinator is that node (its
            // datacenter). The local datacenter is the node's own, whatever it is: topology() checks it.
            await("connect " + ips[i], () -> {
                Cluster c = Cluster.builder()
                        .addContactPointsWithPorts(addr)
                        .withProtocolVersion(ProtocolVersion.V4)
                        .withoutJMXReporting()
                        .withoutMetrics()
                        .withLoadBalancingPolicy(new WhiteListPolicy(
                                DCAwareRoundRobinPolicy.builder().build(), Collections.singletonList(addr)))
                        .withQueryOptions(new QueryOptions().setConsistencyLevel(ConsistencyLevel.LOCAL_ONE))
                        .withSocketOptions(new SocketOptions().setConnectTimeoutMillis(5000).setReadTimeoutMillis(15000))
                        .build();
                try {
                    sessions[k] = c.connect();
                } catch (RuntimeException e) {
                    c.close();
                    throw e;
                }
                clusters[k] = c;
                return null;
            });
        }
        for (int i = 0; i < n; i++) {
            final int k = i;
            await("topology seen by " + ips[i], () -> topology(k));
        }

        String ks = "infra_ready_" + ProcessHandle.current().pid();
        StringBuilder repl = new StringBuilder("{'class': 'NetworkTopologyStrategy'");
        for (int i = 0; i < n; i++) repl.append(", '").append(dc(i)).append("': 1");
        repl.append('}');
        await("keyspace " + ks + " " + repl, () -> {
            sessions[0].execute("CREATE KEYSPACE IF NOT EXISTS " + ks + " WITH replication = " + repl);
            sessions[0].execute("CREATE TABLE IF NOT EXISTS " + ks + ".t (k int PRIMARY KEY, v int)");
            for (int i = 0; i < n; i++)
                if (!clusters[i].getMetadata().checkSchemaAgreement()) return "no schema agreement seen from " + ips[i];
            return null;
        });
        for (int i = 0; i < n; i++) {
            final int k = i;
            await("LOCAL_QUORUM write in " + dc(i), () -> {
                sessions[k].execute(new SimpleStatement("INSERT INTO " + ks + ".t (k, v) VALUES (?, ?)", k, k)
                        .setConsistencyLevel(ConsistencyLevel.LOCAL_QUORUM));
                return null;
            });
        }
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                if (i == j) continue;
                final int reader = i, writer = j;
                await("row written in " + dc(j) + " read in " + dc(i), () ->
                        sessions[reader].execute(new SimpleStatement("SELECT v FROM " + ks + ".t WHERE k = ?", writer)
                                .setConsistencyLevel(ConsistencyLevel.LOCAL_ONE)).one() == null ? "not there yet" : null);
            }
        }
        await("drop keyspace " + ks, () -> {
            sessions[0].execute("DROP KEYSPACE IF EXISTS " + ks);
            return null;
        });
        log("ready: " + n + " datacenters");
        System.exit(0);   // no Cluster.close(): it waits seconds for the driver's event loops
    }
}
