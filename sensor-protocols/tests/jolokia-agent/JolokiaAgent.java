// A tiny JVM that serves the real Jolokia request handler (jolokia-core: HttpRequestHandler +
// BackendManager, as packaged by Debian's libjolokia-core-java) over the JDK's built-in HTTP server,
// with a real `akka:type=Cluster` MBean (the attributes of Akka's ClusterNodeMBean) registered in
// the platform MBeanServer. Used by sensor-protocols/tests/jolokia_real.rs and to record the reply
// fixtures in sensor-protocols/tests/fixtures/jolokia/recorded/ (see the README there).
//
// Every JSON reply is produced by Jolokia itself; this file only does what Jolokia's own JVM agent
// (org.jolokia.jvmagent.JolokiaHttpHandler, not packaged by Debian) does around it: strip the
// context from the decoded path, dispatch GET/POST to the handler, turn throwables into Jolokia's
// error JSON, and answer HTTP 200 with the JSON text.
//
// Usage: java -cp <dir>:/usr/share/java/jolokia-core.jar:/usr/share/java/json-simple.jar \
//          JolokiaAgent [PORT]
// PORT 0 (the default) picks a free port. Binds 127.0.0.1 only. Prints one line
// "LISTENING <url> jolokia=<version> protocol=<version>" on stdout when ready, and exits when its
// stdin reaches end of file (so it never outlives the test that started it).

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import javax.management.StandardMBean;
import org.jolokia.Version;
import org.jolokia.backend.BackendManager;
import org.jolokia.config.ConfigKey;
import org.jolokia.config.Configuration;
import org.jolokia.http.HttpRequestHandler;
import org.jolokia.restrictor.AllowAllRestrictor;
import org.jolokia.util.LogHandler;
import org.json.simple.JSONAware;

public final class JolokiaAgent {
    static final String CONTEXT = "/jolokia";

    /** The attributes of Akka's akka.cluster.ClusterNodeMBean (Akka 2.5/2.6). */
    public interface ClusterNodeMBean {
        String getMemberStatus();

        String getClusterStatus();

        String getMembers();

        String getUnreachable();

        String getLeader();

        boolean isSingleton();

        boolean isAvailable();
    }

    /** A fixed four-node cluster seen from left-a, with right-a unreachable. */
    public static final class Cluster implements ClusterNodeMBean {
        static final String SELF = "akka.tcp://Sys@left-a:2552";
        static final String[] NODES = {
            "akka.tcp://Sys@left-a:2552",
            "akka.tcp://Sys@left-b:2552",
            "akka.tcp://Sys@right-a:2552",
            "akka.tcp://Sys@right-b:2552",
        };

        public String getMemberStatus() {
            return "Up";
        }

        // Akka builds this text by hand (ClusterJmx.getClusterStatus); same keys, same nesting.
        public String getClusterStatus() {
            StringBuilder b = new StringBuilder("{\n  \"members\": [");
            for (int i = 0; i < NODES.length; i++) {
                b.append(i == 0 ? "\n" : ",\n");
                b.append("    {\n      \"address\": \"").append(NODES[i]).append("\",\n");
                b.append("      \"roles\": [\n        \"dc-default\"\n      ],\n");
                b.append("      \"status\": \"Up\"\n    }");
            }
            b.append("\n  ],\n  \"self-address\": \"").append(SELF).append("\",\n");
            b.append("  \"unreachable\": [\n    {\n      \"node\": \"").append(NODES[2]).append("\",\n");
            b.append("      \"observed-by\": [\n        \"").append(NODES[0]).append("\",\n        \"");
            b.append(NODES[1]).append("\"\n      ]\n    }\n  ]\n}\n");
            return b.toString();
        }

        public String getMembers() {
            return String.join(",", NODES);
        }

        public String getUnreachable() {
            return NODES[2];
        }

        public String getLeader() {
            return SELF;
        }

        public boolean isSingleton() {
            return false;
        }

        public boolean isAvailable() {
            return true;
        }
    }

    /** An MBean whose name and data need the `!` escaping of GET paths. */
    public interface EscapingMBean {
        Map<String, String> getLabels();

        String getUrl();
    }

    public static final class Escaping implements EscapingMBean {
        public Map<String, String> getLabels() {
            Map<String, String> m = new LinkedHashMap<>();
            m.put("a/b", "slash");
            m.put("bang!", "exclamation");
            m.put("plain", "x");
            return m;
        }

        public String getUrl() {
            return "http://left-a:8778/jolokia/";
        }
    }

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 0;

        MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
        mbs.registerMBean(new StandardMBean(new Cluster(), ClusterNodeMBean.class),
                new ObjectName("akka:type=Cluster"));
        mbs.registerMBean(new StandardMBean(new Escaping(), EscapingMBean.class),
                new ObjectName("demo:type=Escaping,name=jmx/rmi!x y"));

        LogHandler log = new LogHandler() {
            public void debug(String m) {}

            public void info(String m) {
                System.err.println("jolokia: " + m);
            }

            public void error(String m, Throwable t) {
                System.err.println("jolokia error: " + m + (t == null ? "" : ": " + t));
            }
        };
        Configuration config = new Configuration(
                ConfigKey.AGENT_CONTEXT, CONTEXT,
                ConfigKey.AGENT_ID, "jolokia-conformance-agent",
                ConfigKey.DISCOVERY_ENABLED, "false");
        BackendManager backend = new BackendManager(config, log, new AllowAllRestrictor(), false);
        HttpRequestHandler handler = new HttpRequestHandler(config, backend, log);

        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 16);
        server.setExecutor(Executors.newFixedThreadPool(2, r -> {
            Thread t = new Thread(r, "jolokia-http");
            t.setDaemon(true);
            return t;
        }));
        Pattern charset = Pattern.compile(".*;\\s*charset=([^;,]+)\\s*.*");
        server.createContext(CONTEXT, exchange -> serve(exchange, handler, charset));
        server.start();

        String url = "http://127.0.0.1:" + server.getAddress().getPort() + CONTEXT;
        System.out.println("LISTENING " + url + " jolokia=" + Version.getAgentVersion()
                + " protocol=" + Version.getProtocolVersion());
        System.out.flush();

        // Exit when the parent closes our stdin (or dies).
        InputStream in = System.in;
        byte[] buf = new byte[256];
        while (in.read(buf) >= 0) {
            // discard
        }
        server.stop(0);
        backend.destroy();
        System.exit(0);
    }

    @SuppressWarnings("deprecation") // json-simple 2.x deprecates JSONAware, which Jolokia 1.x returns
    static void serve(HttpExchange ex, HttpRequestHandler handler, Pattern charset)
            throws IOException {
        JSONAware json;
        URI uri = ex.getRequestURI();
        // Like the JVM agent's ParsedUri: the decoded path without the context and leading slashes.
        String pathInfo = uri.getPath();
        if (pathInfo.startsWith(CONTEXT)) {
            pathInfo = pathInfo.substring(CONTEXT.length());
        }
        while (pathInfo.startsWith("/") && pathInfo.length() > 1) {
            pathInfo = pathInfo.substring(1);
        }
        Map<String, String[]> params = parseQuery(uri.getRawQuery());
        try {
            String method = ex.getRequestMethod();
            if ("GET".equalsIgnoreCase(method)) {
                json = handler.handleGetRequest(uri.toString(), pathInfo, params);
            } else if ("POST".equalsIgnoreCase(method)) {
                String encoding = null;
                String ctype = ex.getRequestHeaders().getFirst("Content-Type");
                if (ctype != null) {
                    Matcher m = charset.matcher(ctype);
                    if (m.matches()) {
                        encoding = m.group(1);
                    }
                }
                json = handler.handlePostRequest(uri.toString(), ex.getRequestBody(), encoding, params);
            } else {
                throw new IllegalArgumentException("HTTP Method " + method + " is not supported.");
            }
        } catch (Throwable t) {
            json = handler.handleThrowable(t instanceof javax.management.RuntimeMBeanException
                    ? ((javax.management.RuntimeMBeanException) t).getTargetException() : t);
        }
        byte[] body = json.toJSONString().getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        ex.getResponseHeaders().set("Cache-Control", "no-cache");
        ex.sendResponseHeaders(200, body.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    static Map<String, String[]> parseQuery(String q) {
        Map<String, String[]> ret = new TreeMap<>();
        if (q == null || q.isEmpty()) {
            return ret;
        }
        for (String pair : q.split("&")) {
            int i = pair.indexOf('=');
            String k = URLDecoder.decode(i < 0 ? pair : pair.substring(0, i), StandardCharsets.UTF_8);
            String v = i < 0 ? null : URLDecoder.decode(pair.substring(i + 1), StandardCharsets.UTF_8);
            String[] old = ret.get(k);
            String[] now = old == null ? new String[] {v} : Arrays.copyOf(old, old.length + 1);
            now[now.length - 1] = v;
            ret.put(k, now);
        }
        return ret;
    }
}
