package org.springframework.boot.loader;

import java.io.File;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.List;

/**
 * A minimal stand-in for Spring Boot's launcher, for the layered (extracted)
 * form: puts BOOT-INF/classes and every jar in BOOT-INF/lib on a class path
 * and calls the Start-Class named in the manifest.
 */
public final class JarLauncher {
    public static void main(String[] args) throws Exception {
        File root = new File(".").getCanonicalFile();
        List<URL> urls = new ArrayList<>();
        urls.add(new File(root, "BOOT-INF/classes/").toURI().toURL());
        File[] libs = new File(root, "BOOT-INF/lib").listFiles();
        if (libs != null) {
            for (File lib : libs) {
                urls.add(lib.toURI().toURL());
            }
        }
        String startClass;
        try (java.io.InputStream in = new java.io.FileInputStream(new File(root, "META-INF/MANIFEST.MF"))) {
            startClass = new java.util.jar.Manifest(in).getMainAttributes().getValue("Start-Class");
        }
        try (URLClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]), JarLauncher.class.getClassLoader())) {
            loader.loadClass(startClass).getMethod("main", String[].class).invoke(null, (Object) args);
        }
    }

    private JarLauncher() {}
}
