#!/usr/bin/env bash
# Builds a Spring-Boot-style fat jar (target/app.jar: BOOT-INF/lib/*.jar,
# BOOT-INF/classes, META-INF, org/springframework/boot/loader) from the
# sources here and library jars from Debian packages, then extracts it into
# target/extracted/ (what Dockerfile.layered copies, one directory a layer).
#   ./build.sh            build and extract
#   ./build.sh extract    only re-extract the jar (new mtimes on every file)
set -euo pipefail
cd "$(dirname "$0")"
jars=(guava commons-lang3 commons-io jackson-databind jackson-core jackson-annotations
      spring3-core spring3-beans spring3-context slf4j-api snakeyaml)

extract() {
  rm -rf target/extracted
  mkdir -p target/extracted
  (cd target/extracted && jar xf ../app.jar)
}

if [ "${1:-}" = extract ]; then extract; exit 0; fi

rm -rf target
mkdir -p target/classes target/loader target/fat/BOOT-INF/lib target/fat/META-INF
cp_list=()
for j in "${jars[@]}"; do
  src=$(readlink -f "/usr/share/java/$j.jar") || { echo "missing /usr/share/java/$j.jar" >&2; exit 1; }
  cp "$src" target/fat/BOOT-INF/lib/
  cp_list+=("$src")
done
classpath=$(IFS=:; echo "${cp_list[*]}")
javac -q -nowarn -d target/classes -cp "$classpath" src/com/example/*.java 2>/dev/null \
  || javac -d target/classes -cp "$classpath" src/com/example/*.java
javac -d target/loader loader/org/springframework/boot/loader/*.java
mkdir -p target/fat/BOOT-INF/classes
cp -r target/classes/. target/fat/BOOT-INF/classes/
cp -r target/loader/. target/fat/
cat > target/MANIFEST.MF <<MF
Main-Class: org.springframework.boot.loader.JarLauncher
Start-Class: com.example.App
MF
(cd target/fat && jar cfm ../app.jar ../MANIFEST.MF .)
extract
echo "built target/app.jar ($(stat -c %s target/app.jar) bytes) and target/extracted/"
