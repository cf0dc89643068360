<?php
// The client matrix's phpredis client: php phpredis.php PLAN.json
// Runs the plan tests/test_clients.py writes and prints one JSON line per step,
// in the form tests/clients/redis_py.py prints: the commands through
// rawCommand, the sorted-set views through phpredis's own methods for them.
// phpredis answers nil as false and an error as false with getLastError():
// both are told apart here.

$plan = json_decode(file_get_contents($argv[1]), true);

function nil_as_null($v) {
    if ($v === false) {
        return null;
    }
    if (is_array($v)) {
        return array_map('nil_as_null', $v);
    }
    return $v;
}

function emit($r, $step, $i, $call) {
    $r->clearLastError();
    try {
        $v = $call();
        $err = $r->getLastError();
        $line = ($v === false && $err !== null)
            ? ['step' => $step, 'i' => $i, 'error' => $err]
            : ['step' => $step, 'i' => $i, 'reply' => nil_as_null($v)];
    } catch (RedisException $e) {
        $line = ['step' => $step, 'i' => $i, 'error' => $e->getMessage()];
    }
    echo json_encode($line), "\n";
}

function view($r, $op, $args) {
    switch ($op) {
        case 'zrevrange':
            $pairs = [];
            foreach ($r->zRevRange($args[0], (int)$args[1], (int)$args[2], true) as $m => $s) {
                $pairs[] = [(string)$m, $s];
            }
            return $pairs;
        case 'zscore':
            return $r->zScore($args[0], $args[1]);
        case 'zcard':
            return $r->zCard($args[0]);
        case 'exists':
            return $r->exists($args[0]);
        case 'type':
            $names = [Redis::REDIS_NOT_FOUND => 'none', Redis::REDIS_STRING => 'string', Redis::REDIS_SET => 'set',
                      Redis::REDIS_LIST => 'list', Redis::REDIS_ZSET => 'zset', Redis::REDIS_HASH => 'hash'];
            return $names[$r->type($args[0])] ?? 'other';
    }
    throw new Exception("unknown view $op");
}

// A connection authenticated with AUTH password, or AUTH user password; its
// simple-string replies read as their text (phpredis makes every one true
// otherwise, the `model` of SEGMENTS' reply included).
function connect_as($plan, $auth) {
    $r = new Redis();
    $r->connect($plan['host'], $plan['port'], 30);
    $r->auth($auth);
    $r->setOption(Redis::OPT_REPLY_LITERAL, true);
    return $r;
}

$r = connect_as($plan, $plan['password']);
foreach ($plan['commands'] as $i => $cmd) {
    emit($r, 'cmd', $i, fn() => $r->rawCommand(...$cmd));
}
foreach ($plan['views'] as $i => $v) {
    emit($r, 'view', $i, fn() => view($r, $v[0], array_slice($v, 1)));
}
$u = connect_as($plan, [$plan['user'], $plan['user_password']]);
foreach ($plan['user_commands'] as $i => $cmd) {
    emit($u, 'user', $i, fn() => $u->rawCommand(...$cmd));
}
$r->close();
$u->close();
