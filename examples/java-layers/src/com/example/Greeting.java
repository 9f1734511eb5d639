package com.example;

/** Builds the greeting. Edit MESSAGE to make a "one-class change". */
public final class Greeting {
    static final String MESSAGE = "Hello, %s! (java-layers v1)";

    private Greeting() {}

    static String of(String who) {
        return String.format(MESSAGE, who);
    }
}
