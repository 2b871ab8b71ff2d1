// The chaos-trace JMX agent: attached at run time to a JVM that ships no agent (HotSpot dynamic
// attach, `jattach PID load instrument false /tmp/chaos-jmx-agent.jar=ARGS`), it serves Jolokia's
// own request handler (jolokia-core from Debian's libjolokia-core-java, json-simple merged into the
// jar) over the JDK's built-in HTTP server at http://0.0.0.0:PORT/jolokia/.
//
// ARGS: "PORT" (start; a second start while serving is a no-op that keeps the running server, so
// the recorder can attach again without failing on a taken port) or "stop" (stops the HTTP server
// and the Jolokia backend; an agent cannot be unloaded, so this is how the JVM is given back its
// port and threads). The restrictor (ReadOnlyRestrictor) allows read, search, list and version
// only: no writes, no operations, since the agent listens on the container's network.
//
// Nothing is written to the JVM's stdout; errors go to stderr prefixed "chaos-jmx-agent:".

package org.chaostrace.jmxagent;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.instrument.Instrumentation;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jolokia.backend.BackendManager;
import org.jolokia.config.ConfigKey;
import org.jolokia.config.Configuration;
import org.jolokia.http.HttpRequestHandler;
import org.jolokia.util.LogHandler;
import org.json.simple.JSONAware;

public final class Agent {
    /** The agent id in Jolokia's `version` reply: how the recorder recognises its own agent. */
    public static final String AGENT_ID = "chaos-trace-jmx-agent";
    static final String CONTEXT = "/jolokia";
    static final Pattern CHARSET = Pattern.compile(".*;\\s*charset=([^;,]+)\\s*.*");

    private static HttpServer server;
    private static BackendManager backend;
    private static ExecutorService executor;

    private Agent() {}

    public static void agentmain(String args, Instrumentation inst) throws Exception {
        run(args);
    }

    public static void premain(String args, Instrumentation inst) throws Exception {
        run(args);
    }

    static synchronized void run(String args) throws Exception {
        String a = args == null ? "" : args.trim();
        if (a.equals("stop")) {
            stop();
            return;
        }
        int port;
        try {
            port = a.isEmpty() ? 8778 : Integer.parseInt(a);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("chaos-jmx-agent: bad argument '" + a + "' (PORT or stop)");
        }
        if (server != null) {
            if (server.getAddress().getPort() == port) {
                return; // already serving: reuse
            }
            stop();
        }
        start(port);
    }

    private static void start(int port) throws IOException {
        LogHandler log = new LogHandler() {
            public void debug(String m) {}

            public void info(String m) {}

            public void error(String m, Throwable t) {
                System.err.println("chaos-jmx-agent: " + m + (t == null ? "" : ": " + t));
            }
        };
        Configuration config = new Configuration(
                ConfigKey.AGENT_CONTEXT, CONTEXT,
                ConfigKey.AGENT_ID, AGENT_ID,
                ConfigKey.DISCOVERY_ENABLED, "false",
                ConfigKey.INCLUDE_STACKTRACE, "false");
        BackendManager b = new BackendManager(config, log, new ReadOnlyRestrictor(), false);
        HttpRequestHandler handler = new HttpRequestHandler(config, b, log);
        HttpServer s;
        try {
            s = HttpServer.create(new InetSocketAddress(port), 16);
        } catch (IOException e) {
            b.destroy();
            throw new IOException("chaos-jmx-agent: cannot listen on port " + port + ": " + e, e);
        }
        ExecutorService ex = Executors.newFixedThreadPool(2, r -> {
            Thread t = new Thread(r, "chaos-jmx-agent-http");
            t.setDaemon(true);
            return t;
        });
        s.setExecutor(ex);
        s.createContext(CONTEXT, exchange -> serve(exchange, handler));
        s.start();
        server = s;
        backend = b;
        executor = ex;
    }

    private static void stop() {
        if (server != null) {
            server.stop(0);
            server = null;
        }
        if (executor != null) {
            executor.shutdownNow();
            executor = null;
        }
        if (backend != null) {
            backend.destroy();
            backend = null;
        }
    }

    @SuppressWarnings("deprecation") // json-simple 2.x deprecates JSONAware, which Jolokia 1.x returns
    static void serve(HttpExchange ex, HttpRequestHandler handler) throws IOException {
        JSONAware json;
        URI uri = ex.getRequestURI();
        // Like Jolokia's JVM agent: the decoded path without the context and leading slashes.
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
                    Matcher m = CHARSET.matcher(ctype);
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

    static String decode(String s) {
        try {
            return URLDecoder.decode(s, "UTF-8");
        } catch (java.io.UnsupportedEncodingException e) {
            return s; // UTF-8 is always there
        }
    }

    static Map<String, String[]> parseQuery(String q) {
        Map<String, String[]> ret = new TreeMap<>();
        if (q == null || q.isEmpty()) {
            return ret;
        }
        for (String pair : q.split("&")) {
            int i = pair.indexOf('=');
            String k = decode(i < 0 ? pair : pair.substring(0, i));
            String v = i < 0 ? null : decode(pair.substring(i + 1));
            String[] old = ret.get(k);
            String[] now = old == null ? new String[] {v} : Arrays.copyOf(old, old.length + 1);
            now[now.length - 1] = v;
            ret.put(k, now);
        }
        return ret;
    }
}
